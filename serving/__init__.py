"""Serving: the model runtime (serving/models), the BentoML prediction service, its request functions, the
prediction log and the Bento build."""
