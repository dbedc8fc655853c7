"""Item kinds (product and content recommendations): their trainer, fit, evaluation protocols and tuning."""
