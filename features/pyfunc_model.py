"""The file MLflow loads a member model from ("models from code"): no pickled Python objects in the registry."""

from mlflow.models import set_model

from features.pyfunc import MemberModel

set_model(MemberModel())
