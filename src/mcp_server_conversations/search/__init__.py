"""Search above storage: any user text turned into search terms (query), and hybrid ranking with
message embeddings kept current in the background (hybrid)."""
