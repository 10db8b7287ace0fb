from django.urls import path

from ml import views

app_name = "ml"

urlpatterns = [
    path("review/", views.review_queue, name="review-queue"),
    path("review/cases/<int:pk>/", views.review_case, name="review-case"),
    path("clinics/<int:pk>/operating-point/", views.operating_point, name="operating-point"),
]
