from smiless.cli.main import app

app(prog_name="smiless")
