from django.urls import path

from diagnosis import views

app_name = "diagnosis"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("patients/", views.patient_list, name="patient-list"),
    path("patients/<int:pk>/", views.patient_detail, name="patient-detail"),
    path("cases/new/", views.case_new, name="case-new"),
    path("cases/<int:pk>/", views.case_detail, name="case-detail"),
    path("cases/<int:pk>/status/", views.case_status, name="case-status"),
    path("cases/<int:pk>/image/", views.case_image, name="case-image"),
    path("cases/<int:pk>/thumb/<int:size>/", views.case_thumbnail, name="case-thumbnail"),
    path("cases/<int:pk>/heatmap/", views.case_heatmap, name="case-heatmap"),
    path("cases/<int:pk>/retry/", views.case_retry, name="case-retry"),
]
