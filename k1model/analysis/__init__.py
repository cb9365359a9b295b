"""From runs to evidence: pure statistics (`stats`), continual-learning metrics (`cl_metrics`),
what each metric means (`metric_info`), reading runs (`runs`), aggregation (`aggregate`), the
attribution probes (`probes`) and domain separability (`separability`). Import the submodules."""
