"""MMF models provided by mmf-refnet (registered on import by ``mmf_refnet``)."""
