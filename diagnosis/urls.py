from django.urls import path

from diagnosis import views

app_name = "diagnosis"

urlpatterns = [
    path("patients/", views.patient_list, name="patient-list"),
    path("cases/new/", views.case_new, name="case-new"),
    path("cases/<int:pk>/image/", views.case_image, name="case-image"),
    path("cases/<int:pk>/thumb/<int:size>/", views.case_thumbnail, name="case-thumbnail"),
    path("cases/<int:pk>/retry/", views.case_retry, name="case-retry"),
    # correcting records
    path("patients/<int:pk>/edit/", views.patient_edit, name="patient-edit"),
    path("patients/<int:pk>/merge/", views.patient_merge, name="patient-merge"),
    path("lesions/<int:pk>/edit/", views.lesion_edit, name="lesion-edit"),
    path("cases/<int:pk>/move/", views.case_move, name="case-move"),
    path("cases/<int:pk>/withdraw/", views.case_withdraw, name="case-withdraw"),
    path("cases/<int:pk>/restore/", views.case_restore, name="case-restore"),
    path("clinics/<int:pk>/withdrawn/", views.withdrawn_cases, name="withdrawn-cases"),
]
