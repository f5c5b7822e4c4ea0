"""Publishing model folders on the Hugging Face Hub with `huggingface_hub`."""

from __future__ import annotations

from pathlib import Path


def push_model_folder(folder: str | Path, repo_id: str, *, token: str | None = None, private: bool = False,
                      commit_message: str = "Upload HSTL model", revision: str | None = None) -> str:
    """Creates `repo_id` (if needed) and uploads the model folder, leaving out checkpoints and staging folders.

    Returns the URL of the commit.
    """
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    commit = api.upload_folder(
        folder_path=str(folder), repo_id=repo_id, repo_type="model", commit_message=commit_message, revision=revision,
        ignore_patterns=["checkpoints/**", "tokenizer/**", "*.incomplete/**", "runs/**", "best_model/**"],
    )
    return str(getattr(commit, "commit_url", commit))
