"""The sans-IO core: the at-rest format, sizes and layouts, request and header rules,
checksums, aws-chunked decoding, S3 XML and errors. No aiohttp, hvac or botocore here."""
