"""The reference project: a fraud detector on a seeded synthetic card-transaction stream."""
