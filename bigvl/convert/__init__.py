"""Published CLIP / SigLIP checkpoints in and out of bigvl (`python -m bigvl.convert import|export|flags`).

One key table per format (open_clip.py, hf.py, big_vision.py) built from a `config.model`, read in
both directions by layout.py; importer.py reads the files and infers the config, workdir.py writes
and reads bigvl workdirs, export.py writes HF / open_clip files.
"""
