"""ECS services whose tasks really run (moto only records services): see models.py."""
