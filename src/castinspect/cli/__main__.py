"""python -m castinspect.cli"""
from castinspect.cli import app

app(prog_name="castinspect")
