"""The REST API: aiohttp handlers that only parse requests and format answers."""
