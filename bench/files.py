#!/usr/bin/env python3
"""How a run's time and memory grow with the number of files.

Writes N tiny CT slices (8 x 8 pixels, 100 to a folder, as a CD keeps a series) and runs
``dicom_converter.py IN -o OUT -q`` on them, recording the wall time and the peak RSS of
the whole process tree and of its largest process (the main one: it walks, plans, keeps
the index records and writes the manifest and index page), sampled every 20 ms by
bench/run.py's `measure`.  Prints Markdown.

    python3 bench/files.py                    # 1,000 and 10,000 files
    python3 bench/files.py --counts 1000 10000 100000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import REPO, measure  # noqa: E402


def tiny_slices(folder: Path, count: int) -> None:
    """`count` 8 x 8 CT slices, each its own SOP Instance, 100 to a series folder."""
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    pixels = (np.arange(64, dtype=np.int16).reshape(8, 8) * 10).tobytes()
    for number in range(count):
        series, slice_number = divmod(number, 100)
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = CTImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
        ds.Modality, ds.PatientName, ds.PatientID = "CT", "Bench^Files", "B1"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = "2.25.1", f"2.25.2.{series}"
        ds.SeriesNumber, ds.InstanceNumber = series + 1, slice_number + 1
        ds.ImagePositionPatient, ds.ImageOrientationPatient = [0, 0, slice_number], [1, 0, 0, 0, 1, 0]
        ds.Rows = ds.Columns = 8
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.WindowCenter, ds.WindowWidth = 300, 600
        ds.PixelData = pixels
        path = folder / f"S{series:04d}" / f"IM{slice_number:03d}.dcm"
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    print("| files | seconds | ms a file | peak tree RSS (MB) | peak largest process (MB) |\n|---|---|---|---|---|")
    for count in args.counts:
        with tempfile.TemporaryDirectory() as folder:
            work = Path(folder)
            tiny_slices(work / "in", count)
            sample = measure([sys.executable, str(REPO / "dicom_converter.py"), str(work / "in"), "-o",
                              str(work / "out"), "-q", "-j", str(args.jobs)], work / "out")
            print(f"| {count:,} | {sample.seconds:.1f} | {1000 * sample.seconds / count:.2f} | "
                  f"{sample.tree_mb:.0f} | {sample.process_mb:.0f} |", flush=True)


if __name__ == "__main__":
    main()
