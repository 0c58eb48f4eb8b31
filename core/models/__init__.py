"""Model recipes: the embedded tiny models, shape-only specs of real models, user checkpoints."""
