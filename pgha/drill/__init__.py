"""``pgha drill``: a planned switchover or an induced failure under a writer, checked."""
