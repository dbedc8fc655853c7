"""The model runtime: the table of model kinds, the model families, the registry, the champions loader, ranking,
tiers and batch inference. Used alike by the service, batch commands, training (to save what it fits) and
monitoring; importing it never imports BentoML."""
