"""Sharing between centres: second-opinion requests (consultations), their threads; teaching
collections and tumour boards to come."""
