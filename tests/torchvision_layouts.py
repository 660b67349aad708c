"""Tiny data sets in torchvision's official layouts (what its downloads extract to), for tests and the GPU smoke.

Images are small solid-colour JPEGs (one colour per class, `size` pixels square); each class's
JPEG is encoded once and its bytes written per file, so the 5,640 images of DTD take well under
a second. File names, list formats and split sizes follow the official archives:

    write_dtd(root)          <root>/dtd/dtd/images/<class>/<class>_<k>.jpg, labels/{train,val,test}<p>.txt
                             47 classes x 40 images per list (1,880 each), partitions `partitions`
    write_pets(root)         <root>/oxford-iiit-pet/images/<Breed>_<k>.jpg, annotations/{trainval,test}.txt
    write_flowers102(root)   <root>/flowers-102/jpg/image_<id>.jpg, imagelabels.mat, setid.mat
    write_svhn(folder)       <folder>/{train,test}_32x32.mat
    write_caltech101(root)   <root>/caltech101/101_ObjectCategories/<category>/image_<k>.jpg
    tar_gz(folder, archive)  an archive of a folder (what a download would fetch)
"""
from __future__ import annotations

import colorsys
import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

DTD_CLASSES = (
    "banded blotchy braided bubbly bumpy chequered cobwebbed cracked crosshatched crystalline dotted fibrous flecked "
    "freckled frilly gauzy grid grooved honeycombed interlaced knitted lacelike lined marbled matted meshed paisley "
    "perforated pitted pleated polka-dotted porous potholed scaly smeared spiralled sprinkled stained stratified "
    "striped studded swirly veined waffled woven wrinkled zigzagged").split()
PET_BREEDS = (
    "Abyssinian american_bulldog american_pit_bull_terrier basset_hound beagle Bengal Birman Bombay boxer "
    "British_Shorthair chihuahua Egyptian_Mau english_cocker_spaniel english_setter german_shorthaired great_pyrenees "
    "havanese japanese_chin keeshond leonberger Maine_Coon miniature_pinscher newfoundland Persian pomeranian pug "
    "Ragdoll Russian_Blue saint_bernard samoyed scottish_terrier shiba_inu Siamese Sphynx staffordshire_bull_terrier "
    "wheaten_terrier yorkshire_terrier").split()


def colour(label: int, classes: int) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(label / classes, 0.8, 0.9)
    return int(255 * r), int(255 * g), int(255 * b)


def jpeg_bytes(label: int, classes: int, size: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour(label, classes)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def write_dtd(root: Path, size: int = 8, per_list: int = 40, partitions=(1,)) -> Path:
    """DTD as dtd-r1.0.1.tar.gz extracts under torchvision's <root>/dtd: 120 images per class, each partition
    splitting every class's images 40 / 40 / 40 into train / val / test (rotated per partition)."""
    data = Path(root) / "dtd" / "dtd"
    (data / "labels").mkdir(parents=True, exist_ok=True)
    names = {}
    for c, cls in enumerate(DTD_CLASSES):
        folder = data / "images" / cls
        folder.mkdir(parents=True, exist_ok=True)
        blob = jpeg_bytes(c, len(DTD_CLASSES), size)
        names[cls] = [f"{cls}_{k:04d}.jpg" for k in range(3 * per_list)]
        for name in names[cls]:
            (folder / name).write_bytes(blob)
    for p in partitions:
        for s, split in enumerate(("train", "val", "test")):
            block = (s + p - 1) % 3
            lines = [f"{cls}/{name}" for cls in DTD_CLASSES for name in names[cls][block * per_list:(block + 1) * per_list]]
            (data / "labels" / f"{split}{p}.txt").write_text("\n".join(lines) + "\n")
    return Path(root)


def write_pets(root: Path, trainval_per_class: int = 28, test_per_class: int = 2, size: int = 8) -> Path:
    """Oxford-IIIT Pet as images.tar.gz + annotations.tar.gz extract: lines `<Breed>_<k> <class 1..37> <species> <breed id>`."""
    base = Path(root) / "oxford-iiit-pet"
    (base / "images").mkdir(parents=True, exist_ok=True)
    (base / "annotations").mkdir(parents=True, exist_ok=True)
    breeds = sorted(PET_BREEDS, key=str.lower)
    lists = {"trainval": [], "test": []}
    for c, breed in enumerate(breeds):
        blob = jpeg_bytes(c, len(breeds), size)
        species = 1 if breed[0].isupper() else 2
        for k in range(1, trainval_per_class + test_per_class + 1):
            (base / "images" / f"{breed}_{k}.jpg").write_bytes(blob)
            lists["trainval" if k <= trainval_per_class else "test"].append(f"{breed}_{k} {c + 1} {species} 1")
    for split, lines in lists.items():
        (base / "annotations" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return Path(root)


def write_flowers102(root: Path, per_class=(8, 2, 1), size: int = 8) -> dict[str, str]:
    """Flowers-102 as 102flowers.tgz + the two .mat files: per class `per_class` train / val / test images.
    Returns the MD5 of each .mat file (torchvision checks them on opening)."""
    from scipy.io import savemat

    base = Path(root) / "flowers-102"
    (base / "jpg").mkdir(parents=True, exist_ok=True)
    labels, ids = [], {"trnid": [], "valid": [], "tstid": []}
    image_id = 0
    for c in range(102):
        blob = jpeg_bytes(c, 102, size)
        for key, count in zip(ids, per_class):
            for _ in range(count):
                image_id += 1
                (base / "jpg" / f"image_{image_id:05d}.jpg").write_bytes(blob)
                labels.append(c + 1)
                ids[key].append(image_id)
    savemat(base / "imagelabels.mat", {"labels": np.asarray([labels], dtype=np.uint8)})
    savemat(base / "setid.mat", {k: np.asarray([v], dtype=np.uint16) for k, v in ids.items()})
    return {name: md5(base / name) for name in ("imagelabels.mat", "setid.mat")}


def write_svhn(folder: Path, sizes=(("train", 1010), ("test", 30))) -> dict[str, str]:
    """SVHN's {train,test}_32x32.mat: X uint8 [32,32,3,N], y [N,1] in 1..10 (10 is the digit 0). Returns their MD5."""
    from scipy.io import savemat

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sums = {}
    for split, n in sizes:
        digits = np.arange(n) % 10
        x = np.stack([np.full((32, 32, 3), colour(int(d), 10), dtype=np.uint8) for d in digits], axis=-1)
        savemat(folder / f"{split}_32x32.mat", {"X": x, "y": np.where(digits == 0, 10, digits)[:, None].astype(np.uint8)})
        sums[split] = md5(folder / f"{split}_32x32.mat")
    return sums


def write_caltech101(root: Path, categories: int = 102, per_class: int = 31, size: int = 8) -> Path:
    """101_ObjectCategories as torchvision extracts it; the first category is BACKGROUND_Google, as in the archive."""
    base = Path(root) / "caltech101" / "101_ObjectCategories"
    names = ["BACKGROUND_Google"] + [f"category_{i:03d}" for i in range(1, categories)]
    for c, name in enumerate(names):
        (base / name).mkdir(parents=True, exist_ok=True)
        blob = jpeg_bytes(c, categories, size)
        for k in range(1, per_class + 1):
            (base / name / f"image_{k:04d}.jpg").write_bytes(blob)
    return Path(root)


def tar_gz(folder: Path, archive: Path) -> str:
    """`folder` packed as <archive> (.tar.gz) with `folder`'s name at the top; returns the archive's MD5."""
    with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
        tar.add(folder, arcname=Path(folder).name)
    return md5(archive)


def md5(path: Path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


# ---------------------------------------------------------------- the VTAB-1k sources of nvpt/data/vtab_sources.py
EUROSAT_CLASSES = ("AnnualCrop Forest HerbaceousVegetation Highway Industrial Pasture PermanentCrop Residential River "
                   "SeaLake").split()


def png_bytes(label: int, classes: int, size: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour(label, classes)).save(buffer, format="PNG")
    return buffer.getvalue()


def write_eurosat(root: Path, per_class: int = 140, size: int = 8) -> Path:
    """EuroSAT.zip as torchvision extracts it: <root>/eurosat/2750/<Class>/<Class>_<k>.jpg."""
    for c, name in enumerate(EUROSAT_CLASSES):
        folder = Path(root) / "eurosat" / "2750" / name
        folder.mkdir(parents=True, exist_ok=True)
        blob = jpeg_bytes(c, len(EUROSAT_CLASSES), size)
        for k in range(1, per_class + 1):
            (folder / f"{name}_{k}.jpg").write_bytes(blob)
    return Path(root)


def write_sun397(root: Path, classes=("a/abbey", "b/bedroom", "o/outdoor/church"), per_class: int = 700,
                 size: int = 8) -> Path:
    """SUN397.tar.gz as torchvision extracts it: <root>/SUN397/ClassName.txt (`/a/abbey` per line) and
    <root>/SUN397/<letter>/<class>/sun_<id>.jpg."""
    base = Path(root) / "SUN397"
    base.mkdir(parents=True, exist_ok=True)
    (base / "ClassName.txt").write_text("".join(f"/{c}\n" for c in classes))
    for i, name in enumerate(classes):
        (base / name).mkdir(parents=True, exist_ok=True)
        blob = jpeg_bytes(i, len(classes), size)
        for k in range(per_class):
            (base / name / f"sun_{i:02d}{k:05d}.jpg").write_bytes(blob)
    return Path(root)


def write_clevr(root: Path, train: int = 2000, val: int = 12, size: int = 8) -> list[dict]:
    """CLEVR_v1.0.zip as torchvision extracts it: <root>/clevr/CLEVR_v1.0/images/{train,val,test}/CLEVR_<split>_<k>.png
    and scenes/CLEVR_{train,val}_scenes.json. Scene k has 3 + k % 8 objects, the closest at depth 7.75 + (k % 6) / 2
    (VTAB's distance class k % 6). Returns the val scenes."""
    base = Path(root) / "clevr" / "CLEVR_v1.0"
    blobs = [png_bytes(c, 8, size) for c in range(8)]
    out = {}
    for split, n in (("train", train), ("val", val), ("test", 2)):
        (base / "images" / split).mkdir(parents=True, exist_ok=True)
        scenes = []
        for k in range(n):
            name = f"CLEVR_{split}_{k:06d}.png"
            (base / "images" / split / name).write_bytes(blobs[k % 8])
            closest = 7.75 + (k % 6) / 2
            objects = [{"pixel_coords": [10, 20, closest + 3.0 * (j > 0)], "size": "large"} for j in range(3 + k % 8)]
            scenes.append({"image_filename": name, "objects": objects})
        if split != "test":
            (base / "scenes").mkdir(parents=True, exist_ok=True)
            (base / "scenes" / f"CLEVR_{split}_scenes.json").write_text(json.dumps({"scenes": scenes}))
            out[split] = scenes
    return out["val"]


def write_kitti(root: Path, images: int = 3600, size: int = 8) -> Path:
    """data_object_image_2.zip + data_object_label_2.zip as torchvision's Kitti extracts them:
    <root>/Kitti/raw/training/image_2/<id>.png and label_2/<id>.txt (15 fields per object: type, truncation,
    occlusion, alpha, bbox x4, dimensions x3, location x y z, rotation_y). Image k: a Car at depth 4, 12 or
    30 m or only a Pedestrian (VTAB classes 0, 1, 2, 3 by k % 4)."""
    base = Path(root) / "Kitti" / "raw" / "training"
    (base / "image_2").mkdir(parents=True, exist_ok=True)
    (base / "label_2").mkdir(parents=True, exist_ok=True)
    blobs = [png_bytes(c, 4, size) for c in range(4)]
    for k in range(images):
        kind, z = (("Car", 4.0), ("Van", 12.0), ("Truck", 30.0), ("Pedestrian", 5.0))[k % 4]
        (base / "image_2" / f"{k:06d}.png").write_bytes(blobs[k % 4])
        rows = [f"{kind} 0.00 0 -1.57 10.0 20.0 30.0 40.0 1.5 1.6 3.9 1.0 1.7 {z:.2f} 0.01",
                "DontCare -1 -1 -10 1.0 2.0 3.0 4.0 -1 -1 -1 -1000 -1000 -1000 -10"]
        (base / "label_2" / f"{k:06d}.txt").write_text("\n".join(rows) + "\n")
    return Path(root)


def write_stanford_cars(root: Path, classes: int = 4, train_per_class: int = 10, test_per_class: int = 2,
                        size: int = 8) -> Path:
    """Stanford Cars in torchvision's StanfordCars layout (its download no longer works): <root>/stanford_cars/
    devkit/{cars_meta.mat,cars_train_annos.mat}, cars_train/<id>.jpg, cars_test/<id>.jpg and
    cars_test_annos_withlabels.mat; annotations hold `fname` and `class` (1-based)."""
    from scipy.io import savemat

    base = Path(root) / "stanford_cars"
    (base / "devkit").mkdir(parents=True, exist_ok=True)
    savemat(base / "devkit" / "cars_meta.mat",
            {"class_names": np.array([[f"Maker Model {c}" for c in range(classes)]], dtype=object)})
    for split, per_class, mat in (("train", train_per_class, base / "devkit" / "cars_train_annos.mat"),
                                  ("test", test_per_class, base / "cars_test_annos_withlabels.mat")):
        (base / f"cars_{split}").mkdir(parents=True, exist_ok=True)
        rows = []
        for k in range(classes * per_class):
            name = f"{k + 1:05d}.jpg"
            (base / f"cars_{split}" / name).write_bytes(jpeg_bytes(k % classes, classes, size))
            rows.append((name, k % classes + 1))
        records = np.array(rows, dtype=[("fname", object), ("class", object)])
        savemat(mat, {"annotations": records.reshape(1, -1)})
    return Path(root)
