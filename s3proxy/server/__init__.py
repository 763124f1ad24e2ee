"""The aiohttp shell: the application, the read and write handlers, relaying, whoami."""
