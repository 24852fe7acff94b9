"""Development only: the CRM sandbox, the demo requests and `make run`; never used by the service."""
