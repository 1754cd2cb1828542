"""What people do with the panel: validate, change models, register work for the servers."""
