"""Uploads a file with tuspy (the tus project's Python client) and prints the upload's URL.

Usage: tus_upload.py ENDPOINT TOKEN PATH CHUNK_SIZE
The client retries a failed chunk after asking the server for the offset (HEAD), which is how
it resumes across the dropped connection the Rust test's proxy causes.
"""
import sys

from tusclient import client

endpoint, token, path, chunk = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
c = client.TusClient(endpoint, headers={"Authorization": "Bearer " + token})
up = c.uploader(
    file_path=path,
    chunk_size=chunk,
    metadata={"filetype": "application/pdf", "filename": "big.pdf"},
    retries=5,
    retry_delay=0.2,
)
up.upload()
print(up.url)
