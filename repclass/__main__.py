from repclass.cli import main

main(prog_name="repclass")
