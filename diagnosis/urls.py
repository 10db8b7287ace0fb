from django.urls import path

from diagnosis import views

app_name = "diagnosis"

urlpatterns = [
    path("patients/", views.patient_list, name="patient-list"),
    path("cases/new/", views.case_new, name="case-new"),
    path("cases/<int:pk>/image/", views.case_image, name="case-image"),
    path("cases/<int:pk>/thumb/<int:size>/", views.case_thumbnail, name="case-thumbnail"),
    path("cases/<int:pk>/retry/", views.case_retry, name="case-retry"),
]
