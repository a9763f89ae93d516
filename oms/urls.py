"""Console pages (login required)."""

from django.urls import path

from oms import views

app_name = "oms"

urlpatterns = [
    path("", views.overview, name="overview"),
]
