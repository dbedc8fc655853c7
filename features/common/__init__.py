"""The floor every package stands on: state home, errors, progress, settings, configs, samples, the CLI kit."""
