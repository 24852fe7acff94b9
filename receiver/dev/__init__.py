"""Development tools: the CRM and provider sandbox, the demo, make run. Not part of the product."""
