"""Analyse recorded videos and folders of photos: `python analyze.py INPUT... [out=analysis] [every=1] [ckpt=...]`
(installed: `mimic-analyze ...`). Per input, in out/<input name>/: faces.csv, people.csv, timeline.png and
summary.json (photos: faces.csv, contact_sheet.png). All settings live in src/mimic/conf/analyze.yaml.
"""

from mimic.cli import analyze

if __name__ == "__main__":
    analyze()
