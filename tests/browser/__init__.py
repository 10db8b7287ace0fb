"""Pages driven in headless Chromium (Playwright)."""
