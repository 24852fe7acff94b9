"""The ledger: every signal, the consent state it leads to and the CRM deliveries it owes."""
