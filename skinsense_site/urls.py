from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView


class ApiDocsView(SpectacularSwaggerSplitView):
    """Swagger UI with nothing inline, so it runs under the site's Content-Security-Policy: its
    start-up script is served from this URL (``?script``) and its page styles from static."""

    template_name = "drf_spectacular/swagger_ui_csp.html"


urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/v1/", include("skinsense_site.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", ApiDocsView.as_view(url_name="schema"), name="api-docs"),
    path("", include("ml.urls")),
    path("", include("diagnosis.urls")),
]
