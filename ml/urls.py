from django.urls import path

from ml.views import account, cases, review

app_name = "ml"

urlpatterns = [
    path("", cases.dashboard, name="dashboard"),
    path("patients/<int:pk>/", cases.patient_detail, name="patient-detail"),
    path("cases/<int:pk>/", cases.case_detail, name="case-detail"),
    path("cases/<int:pk>/status/", cases.case_status, name="case-status"),
    path("cases/<int:pk>/heatmap/", cases.case_heatmap, name="case-heatmap"),
    path("review/", review.review_queue, name="review-queue"),
    path("review/cases/<int:pk>/", review.review_case, name="review-case"),
    path("account/notifications/", account.notifications, name="notifications"),
    path("clinics/<int:pk>/operating-point/", review.operating_point, name="operating-point"),
]
