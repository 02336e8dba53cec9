"""learner-export: streaming exports of learners from PostgreSQL."""
