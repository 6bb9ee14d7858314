"""MLflow: tracking URIs, the store, a sweep's runs and trial records, resume, Model Registry, promotion."""
