"""Cloud TPU launch helpers (gcloud TPU VMs and queued resources, xpk on GKE)."""
