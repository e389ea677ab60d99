"""Wire contracts shared by the shipper, the worker and the MTA side."""
