"""The gradient-inversion study: federated clients' updates inverted by the server."""
