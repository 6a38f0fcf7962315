"""The zoo: one module per model family; each registers its entries on import."""
