"""python -m castinspect"""
from castinspect.cli import app

app(prog_name="castinspect")
