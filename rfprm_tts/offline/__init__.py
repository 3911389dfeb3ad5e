"""The PRM outside a search: `rfprm score`, `select`, `eval-prm` and `view`, and scoring given responses (responses.py), which the RL rewards and the proxy share."""
