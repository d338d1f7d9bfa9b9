"""`ladder tune`: the search beyond the fixed ladder, inside the quality budget (space, study, evaluator, outputs)."""
