"""Running Airflow and the services: the Airflow runner, the reaper of orphaned runs, and the
production stack on one machine."""
