"""Unit tests import chalicelib without any AWS endpoint; give botocore a region only."""
import os

os.environ.setdefault("AWS_REGION", "us-east-1")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
