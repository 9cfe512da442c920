"""Fetching benchmark releases from the Hugging Face Hub (only when online; data never ships)."""

from __future__ import annotations

from pathlib import Path

from t3edge.errors import T3Error


def fetch_dataset(repo: str, dest: Path, *, what: str, token: str | None = None,
                  allow_patterns: list[str] | None = None) -> Path:
    """Download a dataset repo into `dest`; offline or refused -> one-line T3Error naming the repo."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError

    try:
        path = snapshot_download(repo_id=repo, repo_type="dataset", local_dir=str(dest), token=token,
                                 allow_patterns=allow_patterns)
    except GatedRepoError as exc:
        raise T3Error(f"the {what} dataset {repo} is gated and this token has no access",
                      hint=f"accept its terms at https://huggingface.co/datasets/{repo} and pass --token") from exc
    except LocalEntryNotFoundError as exc:
        raise T3Error(f"cannot download the {what} dataset {repo}: the hub is unreachable or offline mode is on",
                      hint=f"go online (unset HF_HUB_OFFLINE), or download {repo} elsewhere and pass --data DIR") from exc
    except (HfHubHTTPError, OSError) as exc:
        raise T3Error(f"cannot download the {what} dataset {repo}: {type(exc).__name__}: {exc}".splitlines()[0],
                      hint=f"check the network and token, or download {repo} elsewhere and pass --data DIR") from exc
    return Path(path)


def unpack_zips(folder: Path) -> None:
    """Extract every zip directly in `folder` into it (members escaping the folder are refused)."""
    import zipfile

    root = folder.resolve()
    for archive in sorted(folder.glob("*.zip")):
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                target = (root / name).resolve()
                if root not in target.parents and target != root:
                    raise T3Error(f"{archive}: member {name!r} would land outside {root}",
                                  hint="the archive is not a benchmark release; remove it")
            zf.extractall(root)
