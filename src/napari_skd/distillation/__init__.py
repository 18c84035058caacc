"""Teacher training and soft knowledge distillation."""
