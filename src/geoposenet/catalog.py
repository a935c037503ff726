"""The public datasets `geoposenet download` fetches: one archive per scene, where it lives, and
what it should weigh.

Cambridge Landmarks (Kendall et al., ICCV 2015) is hosted by the University of Cambridge
repository (https://www.repository.cam.ac.uk/), one zip per scene under a handle; these are the
handle URLs that DSAC*'s and kapture-localization's setup scripts use (the repository may redirect
them). 7-Scenes (Shotton et al., CVPR 2013) is hosted by Microsoft; each scene zip holds the split
files and one zip per sequence.

Neither host publishes a SHA-256 or a byte size for these archives that we know of, and we do not
invent one: every entry says "none published", and a download is verified by size only, against
the size the server announces (Content-Length / Content-Range), and by the CRC-32 of every zip
member when unpacking. Fill in `size` and `sha256` (and `checksum_source`) from a trusted
download to have them checked too.
"""

from __future__ import annotations

from dataclasses import dataclass

CAMBRIDGE_HOST = "https://www.repository.cam.ac.uk/bitstream/handle/1810"
SEVEN_SCENES_HOST = (
    "https://download.microsoft.com/download/2/8/5/28564B23-0828-408F-8631-23B1EFF1DAC8"
)
NO_CHECKSUM = "none published: verified by size only"
URL_BASE_VARIABLE = "GEOPOSENET_URL_BASE"  # a mirror holding NAME.zip files, like --url-base


@dataclass(frozen=True)
class Archive:
    """One scene's archive: `name` is the scene and the folder it unpacks into (DIR/name);
    `size` in bytes and `sha256` (hex) are None when not published; `nested` says the archive
    holds one zip per sequence (7-Scenes) to unpack in place."""

    name: str
    dataset: str  # "cambridge" | "7scenes"
    url: str
    size: int | None = None
    sha256: str | None = None
    checksum_source: str = NO_CHECKSUM
    nested: bool = False

    def url_from(self, base: str | None) -> str:
        """The URL to fetch: the official one, or `base`/NAME.zip on a mirror."""
        return self.url if not base else f"{base.rstrip('/')}/{self.name}.zip"


_CAMBRIDGE_HANDLES = {
    "KingsCollege": "251342",
    "OldHospital": "251340",
    "ShopFacade": "251336",
    "StMarysChurch": "251294",
    "GreatCourt": "251291",
    "Street": "251292",
}
_SEVEN_SCENES = ("chess", "fire", "heads", "office", "pumpkin", "redkitchen", "stairs")

ARCHIVES: dict[str, Archive] = {
    **{
        name: Archive(name, "cambridge", f"{CAMBRIDGE_HOST}/{handle}/{name}.zip")
        for name, handle in _CAMBRIDGE_HANDLES.items()
    },
    **{
        name: Archive(name, "7scenes", f"{SEVEN_SCENES_HOST}/{name}.zip", nested=True)
        for name in _SEVEN_SCENES
    },
}
