"""The `opeva` client commands: apply, get, describe, logs, stop, resume, rerun, delete, wait, plan.

config.py    where the API is and the token: flags, environment, config file
http.py      the API client (httpx); errors a user can act on
render.py    terminal or pipe: rich tables and colours, or plain stable text; JSON/YAML; times and progress
inputs.py    spec files named by `apply -f`, validated with the controller's own code
planning.py  what the controller would do with a folder of specs (verdicts from controller.decide itself)
options.py   what the commands share (connection options, selectors, completion of job names)
apply.py get.py describe.py logs.py control.py wait.py plan.py   one module per command (control: stop,
             resume, rerun, delete)
commands.py  `register(main)`: adds them all to the `opeva` group of cli/main.py
"""
