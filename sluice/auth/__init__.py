"""Admin identity: who is calling the admin API, SCIM and the dashboard, and what they may do."""
