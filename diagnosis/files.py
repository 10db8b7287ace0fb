"""Serving private files: a case's image and its thumbnails, only after the caller's scoping
query found the case, with headers that keep originals out of every cache."""

from django.conf import settings
from django.http import FileResponse, Http404, HttpResponseNotModified
from django.utils.http import parse_etags

from diagnosis import thumbnails
from diagnosis.audit import audit_record
from diagnosis.models import AuditAction, Case


def serve_private_image(file_field, *, filename: str) -> FileResponse:
    """Stream a private image with headers that keep it out of every cache."""
    try:
        handle = file_field.open("rb")
    except (FileNotFoundError, ValueError):
        raise Http404("The image file is missing.")
    content_type = "image/png" if file_field.name.endswith(".png") else "image/jpeg"
    response = FileResponse(handle, content_type=content_type)
    response["Cache-Control"] = "no-store, private"
    response["Content-Disposition"] = f'inline; filename="{filename}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response


def audit_view(request, case: Case, *, target_type: str, via: str, **detail) -> None:
    """Audit that the user was sent one of the case's files (``via`` api or web)."""
    audit_record(
        action=AuditAction.VIEW,
        actor=request.user,
        target=case,
        target_type=target_type,
        detail={**detail, **({"via": via} if via != "web" else {})},
    )


def serve_case_image(request, case: Case, *, via: str = "web") -> FileResponse:
    """A case's original image (audited), for a case the caller's scoping query found."""
    audit_view(request, case, target_type="case_image", via=via)
    extension = "png" if case.image.name.endswith(".png") else "jpg"
    return serve_private_image(case.image, filename=f"case-{case.pk}.{extension}")


# How long a browser keeps a thumbnail before asking again (If-None-Match → 304).
THUMBNAIL_MAX_AGE = getattr(settings, "THUMBNAIL_MAX_AGE", 24 * 3600)


def serve_case_thumbnail(request, case: Case, *, size: int, via: str = "web"):
    """A case's cached JPEG thumbnail. Unlike the original, it may stay in the browser's own
    cache (``private``): the bytes of a case never change, so its ETag never does either."""
    if size not in thumbnails.THUMBNAIL_SIZES:
        raise Http404("No thumbnail of that size.")
    etag = thumbnails.etag_for(sha256=case.image_sha256, size=size)
    headers = {
        "ETag": etag,
        "Cache-Control": f"private, max-age={THUMBNAIL_MAX_AGE}",
        "X-Content-Type-Options": "nosniff",
    }
    if_none_match = request.headers.get("If-None-Match", "")
    if if_none_match and (set(parse_etags(if_none_match)) & {etag, f"W/{etag}", "*"}):
        not_modified = HttpResponseNotModified()
        for name, value in headers.items():
            not_modified[name] = value
        return not_modified  # the browser has these bytes already (audited when sent)
    try:
        path = thumbnails.case_thumbnail(case, size=size)
    except thumbnails.ThumbnailError:
        raise Http404("The image file is missing.")
    audit_view(request, case, target_type="case_thumbnail", via=via, size=size)
    response = FileResponse(path.open("rb"), content_type="image/jpeg")
    for name, value in headers.items():
        response[name] = value
    response["Content-Disposition"] = f'inline; filename="case-{case.pk}-{size}.jpg"'
    return response
