"""Shipping the application: the source bundle of server/, the statics, and the `deploy` task."""
