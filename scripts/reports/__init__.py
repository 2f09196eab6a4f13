"""Reports on a trained pipeline: the evaluate step's pages (evaluation.py),
calibration before and after (calibration.py), the error-analysis page and its
browser check (error_page.py, check_error_page.py), the threshold table's
check (threshold_check.py), a bit-exact digest of predictions
(prediction_digest.py) and the forgetting gate after new labels were added
(forgetting.py)."""
