"""Study A: length generalisation via image reconstruction (Rathjens et al. 2026)."""
