"""Streams multipart file parts straight into blob staging, hashing as they arrive.

Django hands each chunk of the request body to this handler; it goes into a
StagedBlob (hash + write, one chunk in memory) and nowhere else. Whatever is
not committed by the view is discarded when the request ends.
"""

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler

from controlplane.errors import PayloadTooLarge
from registry.storage import StagedBlob, default_store


class StagedUpload(UploadedFile):
    """An uploaded file part that lives in blob staging until the view commits it."""

    def __init__(self, staged: StagedBlob, name: str, content_type: str):
        super().__init__(file=None, name=name, content_type=content_type, size=staged.size)
        self.staged = staged

    def read_small(self, limit: int) -> bytes:
        """The whole part, for small parts such as a signature bundle."""
        if self.staged.size > limit:
            raise PayloadTooLarge(f"'{self.field_name}' is larger than {limit} bytes")
        with self.staged.open() as fh:
            return fh.read()

    def close(self):
        pass


class BlobUploadHandler(FileUploadHandler):
    # Django's default is 64 KiB; bigger chunks mean fewer Python-level loops per GiB, same bounded memory.
    chunk_size = 1024 * 1024

    def __init__(self, request=None):
        super().__init__(request)
        self.staged: StagedBlob | None = None
        self.all_staged: list[StagedBlob] = []
        if request is not None:
            request.mlcp_staged_blobs = self.all_staged

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        limit = settings.MLCP_MAX_UPLOAD_BYTES
        if content_length and content_length > limit + 1024 * 1024:
            raise PayloadTooLarge(
                f"the request is {content_length} bytes; uploads are limited to {limit} bytes",
                limit=limit,
            )
        return None

    def new_file(self, field_name, file_name, *args, **kwargs):
        super().new_file(field_name, file_name, *args, **kwargs)
        self.staged = default_store().stage(max_bytes=settings.MLCP_MAX_UPLOAD_BYTES)
        self.all_staged.append(self.staged)

    def receive_data_chunk(self, raw_data, start):
        self.staged.write(raw_data)
        return None

    def file_complete(self, file_size):
        self.staged.finish()
        upload = StagedUpload(self.staged, self.file_name, self.content_type)
        upload.field_name = self.field_name
        return upload

    def upload_interrupted(self):
        discard_all(self.all_staged)


def discard_all(staged_blobs) -> None:
    for staged in staged_blobs:
        staged.discard()
